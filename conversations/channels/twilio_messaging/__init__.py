"""Twilio SMS, MMS and WhatsApp: ``adapter`` (verify, parse, send), ``webhooks`` (inbound and status
callbacks), ``ingest`` (stored webhook → the one ingest path), ``tasks`` and ``recovery`` (tick jobs)."""


def ready() -> None:
    from contactcenter import tick

    from . import recovery

    tick.register("requeue_pending_media", recovery.requeue_pending_media)
    tick.register("requeue_unprocessed_inbound", recovery.requeue_unprocessed_inbound)
    tick.register("prune_processed_inbound", recovery.prune_processed_inbound)
