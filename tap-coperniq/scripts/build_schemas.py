"""Regenerate tap_coperniq/schemas/*.json from Coperniq's OpenAPI document.

Why a generator: the schemas must follow the public spec field for field, and the spec changes.
Why the post-processing: the spec's Fern export drops inherited fields (Contact id/timestamps,
ProjectWithPhaseInstances), uses enums that a real account may exceed, and marks fields required that
the API omits. A tap schema that is stricter than the API fails the pipeline, so everything except `id`
is nullable, enums are dropped (the allowed values stay in the description) and only `date-time` formats
are kept.

Usage: python scripts/build_schemas.py [path/to/coperniq-openapi.yml]
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SPEC = Path("/work/shared/reference/coperniq-openapi.yml")
OUT = Path(__file__).resolve().parents[1] / "tap_coperniq" / "schemas"

Schema = dict[str, Any]


def nullable(schema: Schema) -> Schema:
    """Add "null" to the schema's type (objects, arrays and scalars alike)."""
    out = dict(schema)
    typ = out.get("type")
    if typ is None:
        return out
    types = [typ] if isinstance(typ, str) else list(typ)
    if "null" not in types:
        types.append("null")
    out["type"] = types
    return out


class Normalizer:
    """Resolve $refs and loosen an OpenAPI 3.1 schema into a Singer-friendly JSON Schema."""

    def __init__(self, components: dict[str, Schema]) -> None:
        self.components = components

    def ref(self, name: str) -> Schema:
        return self.norm(self.components[name])

    def norm(self, schema: Schema) -> Schema:  # one switch over schema keywords
        if "$ref" in schema:
            target = self.components[schema["$ref"].rsplit("/", 1)[-1]]
            merged = {**copy.deepcopy(target), **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.norm(merged)
        if "oneOf" in schema or "anyOf" in schema:
            variants: list[Schema] = schema["oneOf"] if "oneOf" in schema else schema.get("anyOf", [])
            options = [o for o in variants if o.get("type") != "null"]
            if len(options) == 1:
                inner = self.norm(options[0])
                if "description" in schema:
                    inner["description"] = schema["description"]
                return nullable(inner)
            normed = [self.norm(o) for o in options]
            kinds = {
                tuple(sorted(set([o["type"]] if isinstance(o.get("type"), str) else o.get("type", [])) - {"null"}))
                for o in normed
            }
            if len(kinds) == 1 and (kind := next(iter(kinds))) and "object" not in kind:
                common: Schema = {"type": list(kind)}  # e.g. ProductCategory | ServiceCategory: both strings
                if schema.get("description"):
                    common["description"] = schema["description"].strip().split("\n")[0]
                return nullable(common)
            return {"description": schema.get("description", "")} if schema.get("description") else {}
        out: Schema = {}
        if "type" in schema:
            out["type"] = schema["type"]
        if "enum" in schema:
            values = ", ".join(str(v) for v in schema["enum"])
            desc = schema.get("description", "").strip().split("\n")[0]
            schema = {**schema, "description": f"{desc} (known values: {values})".strip()}
        if schema.get("format") in {"date-time", "date"}:
            out["format"] = schema["format"]
        if schema.get("description"):
            out["description"] = schema["description"].strip().split("\n")[0]
        if "properties" in schema:
            out["properties"] = {k: self.norm(v) for k, v in schema["properties"].items()}
        if out.get("type") == "object" or "properties" in out:
            out["type"] = out.get("type", "object")
            if "properties" not in out:
                out["additionalProperties"] = True
        if "items" in schema:
            out["items"] = self.norm(schema["items"])
        return nullable(out) if "type" in out else out


def top_level(properties: Schema, *, order: list[str] | None = None) -> Schema:
    """Stream schema: `id` required and non-null, every other field nullable."""
    props = dict(properties)
    props["id"] = {"type": "integer", "description": props.get("id", {}).get("description", "Identifier")}
    keys = ["id"] + [k for k in (order or props) if k != "id" and k in props]
    keys += [k for k in props if k not in keys]
    return {
        "type": "object",
        "required": ["id"],
        "properties": {k: props[k] for k in keys},
    }


def build(spec_path: Path) -> dict[str, Schema]:
    spec = yaml.safe_load(spec_path.read_text())
    n = Normalizer(spec["components"]["schemas"])
    dt = {"type": ["string", "null"], "format": "date-time"}
    person = n.ref("OpportunityOwner")

    # projects: Project + the fields observed on list/get (documented on Opportunity; see README assumptions)
    project = n.ref("Project")["properties"]
    opportunity = n.ref("Opportunity")["properties"]
    for extra in (
        "phaseId",
        "city",
        "state",
        "street",
        "zipcode",
        "geoLocation",
        "imageUrl",
        "streetViewUrl",
        "jurisdiction",
        "owner",
        "salesRep",
        "projectManager",
        "lastActivity",
    ):
        project.setdefault(extra, opportunity[extra])
    project["owner"] = project["salesRep"] = project["projectManager"] = person

    account = n.ref("Account")["properties"]

    # contacts: the Fern export lost id/companyId/timestamps (allOf); the older SDK schema has them
    contact = n.ref("Contact")["properties"]
    contact.update(
        {
            "id": {"type": "integer", "description": "Contact identifier"},
            "companyId": {"type": ["integer", "null"], "description": "Company identifier"},
            "createdAt": dt | {"description": "Creation timestamp"},
            "updatedAt": dt | {"description": "Last update timestamp"},
        }
    )

    workflow = n.ref("Workflow")["properties"]

    invoice = n.ref("Invoice")["properties"]
    invoice["issueDate"] = dt | {"description": "Issue date (accepted on create; returned like Bill.issueDate)"}
    invoice["balance"] = {"type": ["number", "null"], "description": "amount - amountPaid, computed by the tap"}
    # ASSUMPTION: invoices carry the quote-style tax fields when a tax is set (GET /taxes: "on quotes and invoices")
    invoice["taxId"] = {"type": ["integer", "null"], "description": "Tax configuration ID (GET /taxes), as on quotes"}
    invoice["taxRate"] = {"type": ["number", "null"], "description": "Applied tax rate (percent), as on quotes"}
    line = invoice["lineItems"]["items"]["properties"]
    line["sectionName"] = {"type": ["string", "null"], "description": "Invoice section of the line"}

    payment = n.ref("Payment")["properties"]
    payment["invoiceId"] = {
        "type": ["integer", "null"],
        "description": "Invoice the payment belongs to (added by the tap)",
    }

    catalog = n.ref("CatalogItem")["properties"]

    inst = n.ref("ProjectWithPhaseInstancesPhaseInstancesItems")["properties"]
    phase_instance = {
        "id": inst["id"] | {"description": "Phase instance identifier"},
        "projectId": {"type": ["integer", "null"], "description": "Project the phase instance belongs to"},
        "templateId": {"type": ["integer", "null"], "description": "Phase template id (= workflow phases[].id)"},
        "name": inst["name"],
        "type": inst["type"],
        "status": inst["status"],
        "position": inst["position"],
        "startedAt": inst["startedAt"],
        "completedAt": inst["completedAt"],
        "phaseTemplateId": inst["phaseTemplateId"],
        "phaseTemplate": inst["phaseTemplate"],
        "workflowId": {"type": ["integer", "null"], "description": "Workflow of the project (added by the tap)"},
        "projectUpdatedAt": dt | {"description": "updatedAt of the project when the history was read"},
    }

    return {
        "accounts": top_level(account),
        "contacts": top_level(contact),
        "projects": top_level(project),
        "project_phase_instances": top_level(phase_instance),
        "workflows": top_level(workflow),
        "invoices": top_level(invoice),
        "payments": top_level(payment),
        "catalog_items": top_level(catalog),
    }


def main() -> None:
    spec_path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SPEC
    OUT.mkdir(parents=True, exist_ok=True)
    for name, schema in build(spec_path).items():
        (OUT / f"{name}.json").write_text(json.dumps(schema, indent=2) + "\n")
        print(f"wrote {OUT / name}.json ({len(schema['properties'])} fields)")


if __name__ == "__main__":
    main()
