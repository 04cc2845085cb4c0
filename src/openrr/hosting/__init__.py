"""Where render servers run. Only `hosting.factory` knows which backend is in use."""
