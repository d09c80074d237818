"""The web app: incident room for staff, JSON API for machines, public pages for customers."""
