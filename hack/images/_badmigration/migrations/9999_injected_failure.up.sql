-- Failure injection for tag suffix -badmigration (docs/development.md): creates a table,
-- then fails, so a correct migrator must leave the schema exactly as it was.
CREATE TABLE injected_failure_marker (id int);
SELECT 1 / 0;
