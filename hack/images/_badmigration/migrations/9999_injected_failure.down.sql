DROP TABLE IF EXISTS injected_failure_marker;
