"""The post-processor daemon: receive recordings, convert them to mp4, upload, notify.

Modules, one job each: ``receiver`` (the datagram socket), ``state`` (the SQLite
record of accepted work), ``convert`` (h264 to mp4), ``upload`` (scp and ftp),
``notify`` (Telegram), ``schedule`` (when uploads start), ``runner`` (external
programs), ``workers`` (the threads), ``daemon`` (the main loop) and ``cli``.
"""
