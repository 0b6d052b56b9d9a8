"""Loopback HTTP stubs of the external services smsagent talks to (LLM API, Twilio)."""
