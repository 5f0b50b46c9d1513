-- One row per Merge TrackingCategory (QuickBooks Class or Department/Location), with QuickBooks' full name
-- (Parent:Child, as the forward target's tracking.full_name builds it) and whether the target would use it (active).
with recursive src as (
    select * from {{ source_or_empty('quickbooks', 'tracking_categories', {
        'id': 'varchar', 'remote_id': 'varchar', 'name': 'varchar', 'status': 'varchar', 'category_type': 'varchar',
        'parent_category': 'varchar', 'remote_was_deleted': 'boolean', 'modified_at': 'timestamp'}) }}
),
cats as (
    select * from src
    where id is not null
    qualify row_number() over (partition by id order by modified_at desc nulls last) = 1
),
-- walk up the parents (at most 10 levels; a cycle stops there)
path as (
    select id as category_id, parent_category as ancestor_id, coalesce(name, id) as full_name, 0 as depth
    from cats
    union all
    select p.category_id, c.parent_category, coalesce(c.name, c.id) || ':' || p.full_name, p.depth + 1
    from path p join cats c on c.id = p.ancestor_id
    where p.depth < 10
),
full_names as (
    select category_id, full_name from path
    qualify row_number() over (partition by category_id order by depth desc) = 1
)
select
    c.id as category_id,
    c.remote_id,
    nullif(trim(c.name), '') as category_name,
    f.full_name,
    upper(c.category_type) as category_type,
    c.parent_category as parent_category_id,
    upper(c.status) as status,
    not coalesce(c.remote_was_deleted, false) and upper(coalesce(c.status, 'ACTIVE')) = 'ACTIVE' as is_active,
    coalesce(c.remote_was_deleted, false) as is_deleted,
    c.modified_at
from cats c
left join full_names f on f.category_id = c.id
