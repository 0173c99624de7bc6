-- Authorizations: a user's grant of a regional role.
CREATE TABLE authorizations (
    id            uuid PRIMARY KEY,
    user_id       text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    role_type     text NOT NULL CHECK (role_type IN ('COMMUNITY', 'AUTH_CITY_COMPANY',
                      'AUTH_PROVINCE_COMPANY', 'CITY_COMPANY', 'PROVINCE_COMPANY')),
    region_code   text NOT NULL CHECK (region_code ~ '^[0-9]{6}$'),
    status        text NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'REVOKED')),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    activated_at  timestamptz,
    revoked_at    timestamptz,
    revoke_reason text
);

-- Keyset pagination walks (created_at, id); listing by user is the common filter.
CREATE INDEX authorizations_page_idx ON authorizations (created_at, id);
CREATE INDEX authorizations_user_page_idx ON authorizations (user_id, created_at, id);
