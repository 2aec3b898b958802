"""Spiders: navigation only; parsing and storage live in the harvester package."""
