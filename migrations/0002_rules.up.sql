-- The rules that must hold under concurrent requests live in the database.
-- A user holds at most one non-revoked authorization per role type.
CREATE UNIQUE INDEX authorizations_one_open_per_user_role
    ON authorizations (user_id, role_type) WHERE status <> 'REVOKED';

-- At most one ACTIVE company of each company role per region (province or city).
CREATE UNIQUE INDEX authorizations_one_active_company_per_region
    ON authorizations (role_type, region_code)
    WHERE status = 'ACTIVE' AND role_type <> 'COMMUNITY';

-- The check hot path: one ACTIVE grant for (user, role, region).
CREATE INDEX authorizations_check_idx
    ON authorizations (user_id, role_type, region_code) WHERE status = 'ACTIVE';
