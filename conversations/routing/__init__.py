"""Routing: rule expressions, business hours, and the engine that offers conversations to agents."""
