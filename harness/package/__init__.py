"""Codalab-ready zips (``harness package``): results zips read as the server reads them, and code submissions."""
