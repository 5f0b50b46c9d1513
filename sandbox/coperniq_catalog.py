"""Coperniq sandbox reference data: `/v1/workflows` (read-only) and `/v1/catalog-items`.

Both are what other records point at (a project's workflow and phases, an invoice line's catalog item) and change
rarely, so their routes are simple lists and gets; creating a catalog item checks the spec's category enums.
"""

from __future__ import annotations

from typing import Any

from sandbox._server import Request, Response
from sandbox.coperniq_listing import get_record, list_ids
from sandbox.coperniq_params import ListParams, enum, invalid, json_body, num_field, opt_str, req_str
from sandbox.coperniq_state import CoperniqHost, public
from sandbox.coperniq_views import workflow_out
from sandbox.coperniq_writes import insert_catalog_item

CATALOG_TYPES = ("PRODUCT", "SERVICE")
TRADE_GROUPS = ("ENERGY", "MECHANICAL", "ELECTRICAL", "PLUMBING", "LOW_VOLTAGE", "ENVELOPE", "OTHER")
PRODUCT_CATEGORIES = frozenset(
    [
        "BATTERY_SYSTEM",
        "BATTERY_MANAGEMENT_SYSTEM",
        "CHARGING_GATEWAY",
        "COMBINER_BOX",
        "EV_CHARGER",
        "LOAD_CENTER",
        "MICROINVERTER",
        "MOUNTING",
        "POWER_OPTIMIZER",
        "PRODUCTION_METER",
        "PV_INVERTER",
        "PV_MODULE",
        "RACKING",
        "RAPID_SHUTDOWN_DEVICE",
        "TRACKER",
        "WEATHER_STATION",
        "AIR_CONDITIONER",
        "AIR_HANDLING_UNIT",
        "BOILER",
        "CHILLER",
        "COOLING_TOWER",
        "FAN",
        "HEAT_EXCHANGER",
        "HEAT_PUMP",
        "MAKE_UP_AIR_UNIT",
        "PUMP",
        "ROOFTOP_UNIT",
        "THERMOSTAT",
        "VARIABLE_FREQUENCY_DRIVE",
        "AUTOMATIC_TRANSFER_SWITCH",
        "BREAKER",
        "DISCONNECT_SWITCH",
        "ELECTRIC_METER",
        "GENERATOR",
        "LIGHTING_PANEL",
        "PANELBOARD",
        "SWITCHGEAR",
        "TRANSFORMER",
        "UNINTERRUPTIBLE_POWER_SUPPLY",
        "WIRE",
        "BACKFLOW_PREVENTER",
        "BOOSTER_PUMP",
        "GREASE_INTERCEPTOR",
        "STORAGE_TANK",
        "SUMP_PUMP",
        "VALVE",
        "WATER_FILTRATION_SYSTEM",
        "WATER_HEATER",
        "WATER_SOFTENER",
        "ACCESS_CONTROLLER",
        "AUTOMATION_CONTROLLER",
        "CAMERA",
        "CARD_READER",
        "DOOR_STRIKE",
        "MAGLOCK",
        "NETWORK_SWITCH",
        "NETWORK_VIDEO_RECORDER",
        "SENSOR",
        "WIRELESS_ACCESS_POINT",
        "ROOF_COVERING",
        "ROOF_UNDERLAYMENT",
        "ROOF_MEMBRANE",
        "ROOF_FLASHING",
        "ROOF_VENT",
        "WALL_CLADDING",
        "WALL_TRIM",
        "WEATHER_BARRIER",
        "WINDOW",
        "EXTERIOR_DOOR",
        "SKYLIGHT",
        "OPENING_FLASHING",
        "GUTTER",
        "DOWNSPOUT",
        "INSULATION",
        "SEALANT",
        "SHEATHING",
        "OTHER",
    ]
)
SERVICE_CATEGORIES = frozenset(
    [
        "ADJUSTMENT",
        "BALANCING",
        "CALIBRATION",
        "CLEANING",
        "COMMISSIONING",
        "DECOMMISSIONING",
        "DIAGNOSTICS",
        "ENGINEERING",
        "EQUIPMENT_RENTAL",
        "INSPECTION",
        "INSTALLATION",
        "MAINTENANCE",
        "MONITORING",
        "OPTIMIZATION",
        "PERMITTING",
        "RELOCATION",
        "REMOVAL",
        "REPAIR",
        "REPLACEMENT",
        "RETROFIT",
        "SITE_SURVEY",
        "TESTING",
        "TRAINING",
        "OTHER",
    ]
)


def validate_catalog_item(body: dict[str, Any]) -> dict[str, Any]:
    """CatalogItemCreate fields; the category must belong to the type (a product category for a PRODUCT)."""
    fields: dict[str, Any] = {"name": req_str(body, "name")}
    if body.get("type") is None:
        raise invalid("type", "type is required")
    fields["type"] = enum(body, "type", CATALOG_TYPES)
    if body.get("category") is None:
        raise invalid("category", "category is required")
    allowed = PRODUCT_CATEGORIES if fields["type"] == "PRODUCT" else SERVICE_CATEGORIES
    if body["category"] not in allowed:
        raise invalid("category", f"category {body['category']!r} is not valid for type {fields['type']}")
    fields["category"] = body["category"]
    fields["cost"] = num_field(body, "cost", required=True)
    fields["price"] = num_field(body, "price", required=True)
    if body.get("tradeGroup") is not None:
        fields["tradeGroup"] = enum(body, "tradeGroup", TRADE_GROUPS)
    for f in ("manufacturer", "sku", "code", "description"):
        fields[f] = opt_str(body, f)
    return fields


def register_workflow_routes(app: CoperniqHost) -> None:
    """Add the workflow routes to `app` (workflows are created by the admin helpers and the seeder only)."""
    r = app.route

    @r("GET", "/v1/workflows")
    def list_workflows(req: Request) -> Response:
        st = app.state
        params = ListParams.parse(req)
        ids = list_ids(st, "workflows", st.workflows, params)
        return Response(200, [workflow_out(st, st.workflows[i]) for i in params.window(ids)])

    @r("GET", "/v1/workflows/{workflowId}")
    def get_workflow(req: Request) -> Response:
        st = app.state
        return Response(200, workflow_out(st, get_record(st.workflows, req, "workflowId", "Workflow")))


def register_catalog_routes(app: CoperniqHost) -> None:
    """Add the catalog-item routes to `app`."""
    r = app.route

    @r("GET", "/v1/catalog-items")
    def list_catalog(req: Request) -> Response:
        st = app.state
        params = ListParams.parse(req)
        ids = list_ids(st, "catalog_items", st.catalog_items, params)
        return Response(200, [public(st.catalog_items[i]) for i in params.window(ids)])

    @r("POST", "/v1/catalog-items")
    def create_catalog_item(req: Request) -> Response:
        return Response(201, public(insert_catalog_item(app.state, validate_catalog_item(json_body(req)))))

    @r("GET", "/v1/catalog-items/{catalogItemId}")
    def get_catalog_item(req: Request) -> Response:
        return Response(200, public(get_record(app.state.catalog_items, req, "catalogItemId", "Catalog item")))
