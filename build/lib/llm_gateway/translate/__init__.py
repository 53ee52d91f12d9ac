"""Translations between the gateway's lingua franca (OpenAI's chat shapes) and other dialects."""
