"""The kopf operator that runs AuthorizationService resources (group rwadurian.io)."""
