"""Local emulators of the Coperniq and Merge Accounting APIs (the project's embedded default)."""
