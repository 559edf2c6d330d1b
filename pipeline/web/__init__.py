"""Outbound HTTP that is not a model call: the SSRF-safe website fetch, HTML to text, and
alert webhooks. The second place (with ``llm/providers``) allowed to import httpx.
"""
