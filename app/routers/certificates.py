"""志愿服务时长证明: a volunteer downloads a PDF certificate of their 信用时长; anyone checks its code."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.auth import CurrentVolunteer
from app.db import Session
from app.routers.auth import client_address
from app.routers.deps import SettingsDep, errors
from app.schemas.certificates import CertificateCheck, CertificateOut, CertificateRequest
from app.services import certificates

router = APIRouter(tags=["certificates"])


@router.post(
    "/volunteer/certificates",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the certificate (PDF)"},
        **errors(401, 403, 404, 422, 429),
    },
)
async def issue_certificate(
    body: CertificateRequest, session: Session, settings: SettingsDep, actor: CurrentVolunteer
) -> Response:
    """开具时长证明: a PDF of my 信用时长 in the period (name, hours, star level, issuing unit, verification
    code). The code is also in the ``X-Verification-Code`` header; it is not stored and not shown again."""
    issued = await certificates.issue_certificate(session, settings, actor, body)
    headers = {
        "Content-Disposition": f'attachment; filename="sidan-hours-certificate-{issued.certificate.id}.pdf"',
        "X-Verification-Code": issued.code,
        "Cache-Control": "no-store",
    }
    return Response(issued.pdf, media_type="application/pdf", headers=headers)


@router.get("/volunteer/certificates", response_model=list[CertificateOut], responses=errors(401, 403))
async def my_certificates(session: Session, actor: CurrentVolunteer) -> list[CertificateOut]:
    """Certificates issued to me, newest first (without their codes)."""
    return await certificates.my_certificates(session, actor)


@router.get("/certificates/verify", response_model=CertificateCheck, responses=errors(404, 422, 429))
async def verify_certificate(
    request: Request,
    session: Session,
    settings: SettingsDep,
    code: Annotated[str, Query(min_length=1, max_length=64, description="the code printed on the certificate")],
) -> CertificateCheck:
    """时长证明查验 (no login): the masked name, the hours, the issuing unit, the period and the issue date.
    Unknown code: 404. Checks per client address are limited (429)."""
    return await certificates.verify(session, settings, code, client_address(request))
