"""Scrapy commands of this project (COMMANDS_MODULE in harvester/settings.py)."""
