"""Per-conversation facts for the reports, derived from the timeline (see ``derive``)."""
