"""The authorization service: users' regional role authorizations over HTTP."""
