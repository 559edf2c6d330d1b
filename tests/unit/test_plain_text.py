"""Issue 13: lead fields reach an email as plain text, never as template code or markup."""

from __future__ import annotations

from pipeline.stages.emails import EmailFacts, render_email

HOSTILE = '{{ 7 * 7 }} <b>Acme</b> =HYPERLINK("http://evil.example")'


def test_lead_fields_are_rendered_verbatim() -> None:
    facts = EmailFacts(
        first_name="{% raw %}Ada",
        company=HOSTILE,
        title="CTO",
        industry="software",
        pain_point="slow research",
        product="Reconcile",
        variant="A",
        sender_name="Sam",
        sender_company="leadpipe",
    )
    subject, body = render_email("emails/software_executive.txt.j2", facts)
    text = subject + "\n" + body
    assert HOSTILE in text and "{% raw %}Ada" in text
    assert "49" not in text and "&lt;" not in text
