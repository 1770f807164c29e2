"""The shapes of names every part shares: model names, alias names, version ids."""

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ALIAS_PATTERN = MODEL_NAME_PATTERN
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
