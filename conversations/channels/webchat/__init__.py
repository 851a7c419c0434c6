"""Web chat: ``adapter`` (send over the channel layer), ``consumer`` (the widget's websocket),
``ingest`` (visitors, their messages and the widget's frames)."""
