"""Pure clinical rules of the registry (DOMAIN.md). Imports no Django."""
