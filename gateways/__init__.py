"""Authentication and authorisation: one token validator for every interface (arrives with its issue)."""
