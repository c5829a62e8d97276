"""Signing an account in to Telegram (code, 2FA password) and out again."""

from __future__ import annotations

import logging

from telethon import errors

from tgws.account_calls import AccountCalls, OnFlood
from tgws.errors import (
    CodeInvalid,
    GatewayError,
    LoginFlood,
    PasswordInvalid,
    PasswordNeeded,
    PhoneInvalid,
)
from tgws.login_guard import compact_phone
from tgws.qr_login import Delivery, delivery_of, request_new_code
from tgws.rpc_errors import (
    CODE_ERRORS,
    PASSWORD_ERRORS,
    PASSWORD_FLOOD_ERRORS,
    PHONE_ERRORS,
    PHONE_FLOOD_ERRORS,
    translate,
)

log = logging.getLogger("tgws.gateway")


class LoginMethods(AccountCalls):
    @property
    def login_owner(self) -> object:
        """The connection that asked for the pending code (or is asking now), or None."""
        return self._login_owner

    async def send_code(self, phone: str, on_flood: OnFlood | None = None, *,
                        owner: object = None) -> Delivery:
        """Ask Telegram for a login code; how it was delivered (app, sms, call, ...)."""
        compact = compact_phone(phone)
        if compact is None:
            raise PhoneInvalid("malformed phone number")
        # Claimed before the first await, so a second connection asking at the same moment
        # sees the claim (the handler refuses it) instead of racing this one.
        self._login_phone, self._login_owner = None, owner
        try:
            sent = await self._call(lambda c: request_new_code(c, compact), on_flood)
        except PHONE_FLOOD_ERRORS:
            raise LoginFlood("phone") from None
        except PHONE_ERRORS:
            raise PhoneInvalid("Telegram refused the phone number") from None
        except errors.RPCError as err:
            raise translate(err) from None
        finally:
            # The claim ends here either way: a failure leaves nothing pending (so another
            # connection may ask), a success makes it the pending login just below.
            if self._login_owner is owner:
                self._login_owner = None
        self._login_phone, self._login_owner = compact, owner
        return delivery_of(sent)

    async def sign_in(self, code: str, on_flood: OnFlood | None = None, *,
                      owner: object = None) -> None:
        phone = self._login_phone
        if phone is None or owner is not self._login_owner:
            raise CodeInvalid("no code was sent on this connection")
        if not code.strip():
            raise CodeInvalid("empty code")
        try:
            await self._call(lambda c: c.sign_in(phone=phone, code=code.strip()), on_flood)
        except errors.SessionPasswordNeededError:
            raise PasswordNeeded() from None
        except CODE_ERRORS:
            raise CodeInvalid("Telegram refused the code") from None
        except PHONE_FLOOD_ERRORS:
            raise LoginFlood("phone") from None
        except PASSWORD_FLOOD_ERRORS:
            raise LoginFlood("password") from None
        except PHONE_ERRORS:
            raise PhoneInvalid("Telegram refused the phone number") from None
        except errors.RPCError as err:
            raise translate(err) from None
        await self._logged_in()

    async def check_password(self, password: str, on_flood: OnFlood | None = None) -> None:
        if not password:
            raise PasswordInvalid("empty password")
        try:
            await self._call(lambda c: c.sign_in(password=password), on_flood)
        except PASSWORD_FLOOD_ERRORS:
            raise LoginFlood("password") from None
        except PASSWORD_ERRORS:
            raise PasswordInvalid("Telegram refused the password") from None
        except errors.RPCError as err:
            raise translate(err) from None
        await self._logged_in()

    async def _logged_in(self) -> None:
        client = self._client
        self._login_phone = self._login_owner = None
        try:
            me = await self._attempt(lambda c: c.get_me(input_peer=True))
        except errors.RPCError as err:
            raise translate(err) from None
        await self.store.save_session(self.api_key_id, client.session.save(),
                                      getattr(me, "user_id", None))

    async def log_out(self) -> None:
        """auth.LogOut at Telegram, then forget the session (and entity cache) locally."""
        if await self.has_session():
            try:
                await self._attempt(lambda c: c.log_out())
            except (errors.RPCError, GatewayError) as err:  # unavailable, locked, revoked
                # The local session goes anyway: the user asked to be logged out.
                log.warning("account of key #%d: log out at Telegram failed: %s",
                            self.api_key_id, type(err).__name__)
        await self.store.delete_session(self.api_key_id)
        await self._drop_client()

    async def forget_session(self) -> None:
        """Telegram no longer accepts the session (revoked in the app, say): drop it."""
        await self.store.delete_session(self.api_key_id)
        await self._drop_client()
