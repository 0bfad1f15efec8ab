"""Who may call: API keys, Google ID tokens, Alexa request verification."""
