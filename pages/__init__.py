"""The public pages of shared loops and songs: ``/loop/<token>``, ``/song/<token>``, ``/embed/<token>``.

What they are made of, each piece on its own (the pages' HTTP handlers still live in
``rest/pages.py`` and will move here):

- ``static/``: the browser player, plain ES modules served as they are (``player.js``,
  ``kit.js``, ``pattern.js``, ``pitch.js``, ``time.js``) on top of Tone.js and tonal;
- ``preview``: the PNG link-preview picture (``og:image``) of a loop or a song;
- ``timing``: musical time on the server side, the twin of ``static/time.js``;
- ``sounds``: the names and colours the pages show for sound ids.
"""
