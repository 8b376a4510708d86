"""Authentication and authorisation: one token validator for every interface.

Arrives with its issue."""
