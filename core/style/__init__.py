"""Speaking styles: adaptation to a person from a short clip (``adapt``) and the style profiles
it writes (``profile``, ``.imstyle`` files)."""
