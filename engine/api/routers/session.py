"""/session: sign in once with an EIP-4361 message; the token then stands in for X-Wallet-* reads.

``GET /session/nonce`` issues a one-use nonce; ``POST /session`` {message,
signature} checks the signed message (engine.sessions) and answers {token,
address, expires_at}. Sending ``Authorization: Bearer <token>`` makes a read or
a cancel without a signature per request (engine/api/deps.py). Signing out is
client-side: the browser forgets the token, which expires by itself (there is
no server-side session to delete, which is what lets several engines share one).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from engine.api.deps import Clock
from engine.api.schemas import Problem
from engine.sessions import MAX_MESSAGE_CHARS, SessionKeys

__all__ = ["router", "session_host"]

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
router = APIRouter(prefix="/session", tags=["session"], responses={500: _PROBLEM})


class NoncePublic(BaseModel):
    nonce: str
    expires_at: int = Field(description="unix seconds; sign in before then")
    domain: str = Field(description="the EIP-4361 domain this engine expects")
    chain_id: int
    max_lifetime_s: int = Field(description="the longest Expiration Time - Issued At accepted")


class SessionCreate(BaseModel):
    message: str = Field(max_length=MAX_MESSAGE_CHARS, description="the EIP-4361 text, as signed")
    signature: str = Field(max_length=200, description="its personal_sign (EIP-191) signature, 0x hex")


class SessionPublic(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    address: str
    expires_at: int = Field(description="unix seconds")


async def _sessions(request: Request) -> SessionKeys:
    return request.app.state.sessions


Sessions = Annotated[SessionKeys, Depends(_sessions)]


def session_host(request: Request) -> str:
    """The EIP-4361 domain: the `session_domain` setting, else the Host the browser used."""
    configured = request.app.state.session_domain
    return configured or request.headers.get("host", "")


@router.get("/nonce", response_model=NoncePublic, summary="A one-use nonce for an EIP-4361 sign-in",
            responses={503: _PROBLEM})
def get_nonce(request: Request, sessions: Sessions, clock: Clock) -> NoncePublic:
    now = clock()
    nonce = sessions.nonces.issue(now)
    return NoncePublic(nonce=nonce, expires_at=int(now + sessions.nonces.ttl_s), domain=session_host(request),
                       chain_id=sessions.chain_id, max_lifetime_s=sessions.max_lifetime_s)


@router.post("", response_model=SessionPublic, summary="Sign in: a signed EIP-4361 message for a session token",
             responses={401: _PROBLEM, 422: _PROBLEM})
def create_session(body: SessionCreate, request: Request, sessions: Sessions, clock: Clock) -> SessionPublic:
    session = sessions.verify_sign_in(body.message, body.signature, session_host(request), clock())
    return SessionPublic(token=session.token, address=session.address, expires_at=session.expires_at)
