"""Media: RTP relay, rtpengine control and the application endpoint."""
