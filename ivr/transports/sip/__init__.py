"""SIP user agent and RTP media: calls from SIP trunks, PBXs and phones."""
