"""Wire formats shared by the server and its clients (stdlib and numpy only): the render protocol's frames and
close codes, .NET time spans, SDP reading, and the command-id stamp in WebRTC pictures."""
