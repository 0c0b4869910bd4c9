"""Conversations and their messages: REST controllers and services."""
