-- Test image 1.5.0 (docs/development.md): a newer image brings a reversible migration, so
-- rollouts move the schema and rollbacks must take it down again.
ALTER TABLE authorizations ADD COLUMN revoked_by text;
