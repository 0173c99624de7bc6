-- Test image 1.6.0 (docs/development.md): an irreversible migration, so a rollback across
-- it must be refused with a condition that names it.
CREATE TABLE authorization_archive (LIKE authorizations INCLUDING ALL);
