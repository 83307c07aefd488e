"""The millstream reference video site.

``videosite.media`` is the media layer: pure functions over PyAV and Pillow (sniff, probe,
thumbnails, transcode, HLS playlists) that know nothing of millstream.
"""
