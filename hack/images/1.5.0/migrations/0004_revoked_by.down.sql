ALTER TABLE authorizations DROP COLUMN revoked_by;
