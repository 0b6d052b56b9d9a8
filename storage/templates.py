"""Message templates, per workspace."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Template
from storage.types import utcnow

# Installed in every workspace: the ones Avoca documents, under the ids its clients send.
BUILTIN_TEMPLATES: dict[str, tuple[str, str]] = {
    "tmpl_appt_confirm": (
        "appointment_confirmation",
        "Hi {first_name}! Confirming your {service_type} appointment on {date} at {time}. "
        "Reply Y to confirm.",
    ),
    "tmpl_otw": (
        "on_the_way",
        "{technician_name} is heading your way! ETA: {eta} minutes. Track: {tracking_link}",
    ),
    "tmpl_complete": (
        "service_complete",
        "Service complete! Total: ${amount}. Pay online: {payment_link}. "
        "How was your experience? {survey_link}",
    ),
}


async def install_builtin_templates(*, session: AsyncSession, workspace_id: str) -> None:
    """Add the built-in templates the workspace does not have (its own edits are kept)."""
    have = set(
        (await session.exec(select(Template.id).where(Template.workspace_id == workspace_id))).all()
    )
    for template_id, (name, body) in BUILTIN_TEMPLATES.items():
        if template_id not in have:
            session.add(Template(workspace_id=workspace_id, id=template_id, name=name, body=body))
    await session.flush()


async def get_template(
    *, session: AsyncSession, workspace_id: str, template_id: str
) -> Template | None:
    return await session.get(Template, (workspace_id, template_id))


async def list_templates(*, session: AsyncSession, workspace_id: str) -> list[Template]:
    result = await session.exec(
        select(Template).where(Template.workspace_id == workspace_id).order_by(Template.id)
    )
    return list(result.all())


async def save_template(
    *, session: AsyncSession, workspace_id: str, template_id: str, name: str | None, body: str
) -> tuple[Template, bool]:
    """Create or replace; whether it was created."""
    template = await session.get(Template, (workspace_id, template_id))
    created = template is None
    if template is None:
        template = Template(workspace_id=workspace_id, id=template_id, name=name, body=body)
        session.add(template)
    else:
        template.name, template.body, template.updated_at = name, body, utcnow()
    await session.flush()
    return template, created


async def delete_template(*, session: AsyncSession, workspace_id: str, template_id: str) -> bool:
    template = await session.get(Template, (workspace_id, template_id))
    if template is None:
        return False
    await session.delete(template)
    await session.flush()
    return True
