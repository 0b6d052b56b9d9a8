"""Measuring the agent: scenarios, the scripted model that plays their reference answers, the
judge, and pass^k (`smsagent eval`, run by `webhooks.evaluate`)."""
