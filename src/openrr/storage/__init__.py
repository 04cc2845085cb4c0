"""Where conversions read models and write assets: Azure blob containers (SAS or linked credentials) and local
directories that stand in for containers."""
