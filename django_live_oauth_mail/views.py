"""Connect, callback, disconnect, and the user's mailboxes and Send As addresses.

Only the errors we expect are caught, and each renders a page that says what
happened and what to do; nothing is stored unless the whole flow succeeds.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import IntegrityError, router, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from .conf import conf
from .exceptions import (
    AddressTaken,
    AuthorizationDeclined,
    AuthorizationFailed,
    IdentityPlatformUnavailable,
    LiveOAuthMailError,
)
from .forms import SendAsAddressForm
from .identity import flows, providers
from .identity.accounts import link_mailbox, unlink_mailbox
from .models import MailAccount, OutboundMessage, SendAsAddress

logger = logging.getLogger(__name__)

# Authorization codes are about 1-2 KB; nothing legitimate comes near this.
MAX_PARAM_LENGTH = 8192
MAX_PARAMS = 20
RESUBMITTED = "_live_oauth_mail_resubmitted"


def _success_url() -> str:
    return conf.SUCCESS_URL or reverse("live_oauth_mail:accounts")


def _safe_next(request: HttpRequest, candidate: str | None) -> str | None:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return None


def _failure(
    request: HttpRequest, title: str, message: str, *, status: int = 400, **extra: Any
) -> HttpResponse:
    response = render(
        request,
        "live_oauth_mail/error.html",
        {"title": title, "message": message, **extra},
        status=status,
    )
    if status == 503:
        response["Retry-After"] = "10"
    return response


@login_required
@require_http_methods(["GET"])
def accounts(request: HttpRequest) -> HttpResponse:
    """The signed-in user's linked mailboxes."""
    user: Any = request.user  # login_required: never anonymous here
    mailboxes = (
        MailAccount.objects.filter(user=user)
        .prefetch_related("send_as_addresses")
        .order_by("email")
    )
    return render(request, "live_oauth_mail/accounts.html", {"mailboxes": mailboxes})


@login_required
@require_http_methods(["GET", "POST"])
def connect(request: HttpRequest) -> HttpResponse:
    """GET: a page with a button. POST: start the flow and go to the provider.

    ``?provider=`` names the sign-in provider (Microsoft when absent); a name
    no provider is registered under is a 404, as a page that does not exist.
    """
    provider = (
        request.POST.get("provider")
        or request.GET.get("provider")
        or providers.MICROSOFT
    )
    if not providers.is_registered(provider):
        raise Http404("No sign-in provider is registered under that name.")
    login_hint = (
        request.POST.get("login_hint") or request.GET.get("login_hint") or ""
    )[:254]
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "GET":
        return render(
            request,
            "live_oauth_mail/connect.html",
            {
                "login_hint": login_hint,
                "next": next_url or "",
                "provider": "" if provider == providers.MICROSOFT else provider,
            },
        )
    redirect_uri = conf.REDIRECT_URI or request.build_absolute_uri(
        reverse("live_oauth_mail:callback")
    )
    try:
        flow = providers.get(provider).start_link(
            redirect_uri, login_hint=login_hint or None
        )
    except IdentityPlatformUnavailable as error:
        return _unavailable(request, error)
    flows.remember(request, flow, next_url=next_url, provider=provider)
    return HttpResponseRedirect(flow["auth_uri"])


@csrf_exempt  # The single-use state bound to this session protects it instead.
@require_http_methods(["GET", "POST"])
def callback(request: HttpRequest) -> HttpResponse:
    """Finish the flow the provider redirected back from, then link the mailbox."""
    try:
        source = request.POST if request.method == "POST" else request.GET
    except (TooManyFieldsSent, RequestDataTooBig):
        # Answer it here: Django 4.2's error-mail handler would parse the same
        # oversized body again while logging, and fail.
        source = None
    if (
        source is None
        or len(source) > MAX_PARAMS
        or any(
            len(value) > MAX_PARAM_LENGTH
            for _name, values in source.lists()
            for value in values
        )
    ):
        return _failure(
            request,
            _("That sign-in response was not valid"),
            _("The response was too large. Nothing was linked. Please start again."),
        )
    if not request.user.is_authenticated:
        if request.method == "POST" and RESUBMITTED not in source:
            # A cross-site form_post carries no SameSite=Lax session cookie;
            # posting once more from our own page brings it along.
            return render(
                request,
                "live_oauth_mail/resubmit.html",
                {"fields": source.items(), "marker": RESUBMITTED},
            )
        return redirect_to_login(request.get_full_path())
    params = {key: source.get(key, "") for key in source if key != RESUBMITTED}
    state = params.get("state", "")
    # Taken before the other checks: any attempt with a state spends it.
    entry = flows.take(request, state) if state else None
    if not params:
        return _failure(
            request,
            _("This is not a sign-in response"),
            _(
                "Microsoft sends you back to this address after you sign in to "
                "link a mailbox. It was opened without an answer from Microsoft, "
                "so there is nothing to finish here."
            ),
        )
    if not state or not (params.get("code") or params.get("error")):
        return _failure(
            request,
            _("That sign-in response was not valid"),
            _(
                "It lacks what Microsoft always sends back (a state, and a code "
                "or an error), so nothing was linked. Please start again."
            ),
        )
    if entry is None:
        return _failure(
            request,
            _("That sign-in link has expired or was already used"),
            _(
                "A sign-in must be finished within %(minutes)d minutes, in the "
                "browser that started it, and its answer counts once. This one "
                "matches no sign-in waiting here, so nothing was linked. If you "
                "have just linked the mailbox, it is on your mailboxes page; "
                "otherwise, please start again."
            )
            % {"minutes": flows.MAX_AGE_SECONDS // 60},
        )
    # A flow kept before providers were named is Microsoft's.
    provider = providers.get(entry.get("provider") or providers.MICROSOFT)
    try:
        identity = provider.finish_link(entry["flow"], params)
    except AuthorizationDeclined:
        return _failure(
            request,
            _("You cancelled the sign-in"),
            _(
                "You declined at Microsoft, so no mailbox was linked and nothing "
                "was changed. You can link one whenever you like."
            ),
        )
    except IdentityPlatformUnavailable as error:
        return _unavailable(request, error)
    except (AuthorizationFailed, LiveOAuthMailError) as error:
        # Microsoft's error answer, or its refusal to redeem the code.
        logger.warning("Linking a mailbox failed: %s", error)
        return _failure(request, _("Signing in with Microsoft failed"), str(error))
    try:
        account, created = link_mailbox(request.user, identity)
    except AddressTaken as error:
        return _failure(
            request, _("This mailbox cannot be linked"), str(error), status=409
        )
    text = (
        _("%(mailbox)s is linked. Mail from it will now be sent through Microsoft.")
        if created
        else _("%(mailbox)s is linked again.")
    )
    messages.success(request, text % {"mailbox": account.email}, fail_silently=True)
    return HttpResponseRedirect(entry.get("next") or _success_url())


@login_required
@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what disconnecting does, and a button. POST: do it.

    Only the user's own links: another user's gives 404, as a missing one.
    """
    account = get_object_or_404(MailAccount, pk=pk, user=request.user)
    if request.method == "GET":
        next_url = _safe_next(request, request.GET.get("next"))
        waiting = OutboundMessage.objects.filter(
            account=account, status__in=OutboundMessage.WAITING
        )
        return render(
            request,
            "live_oauth_mail/disconnect.html",
            {
                "mailbox": account,
                "send_as": account.send_as_addresses.order_by("address"),
                "waiting": waiting.count(),
                "next": next_url or "",
            },
        )
    mailbox = account.email
    unlink_mailbox(account)
    messages.success(
        request,
        _("%(mailbox)s is no longer linked.") % {"mailbox": mailbox},
        fail_silently=True,
    )
    return _back_to_accounts(request)


@login_required
@require_POST
def send_as_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Let one of the user's own mailboxes send as another address.

    Another user's mailbox gives 404. The owner cannot make the address
    shared: that lets any code on the site send as it, so it is the admin's.
    """
    account = get_object_or_404(MailAccount, pk=pk, user=request.user)
    form = SendAsAddressForm(request.POST, instance=SendAsAddress(account=account))
    if form.is_valid():
        address = form.cleaned_data["address"]
        try:
            # A savepoint, so a double-click's losing insert leaves the
            # request's transaction usable (ATOMIC_REQUESTS, PostgreSQL).
            with transaction.atomic(using=router.db_for_write(SendAsAddress)):
                form.save()
        except IntegrityError:
            # A double-click: the other request stored the same address first.
            if not SendAsAddress.objects.filter(
                account=account, address=address
            ).exists():
                raise
        messages.success(
            request,
            _(
                "%(mailbox)s can now send your mail as %(address)s. Exchange "
                "must also grant %(mailbox)s Send As on %(address)s, or "
                "Microsoft refuses the messages."
            )
            % {"mailbox": account.email, "address": address},
            fail_silently=True,
        )
    else:
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error), fail_silently=True)
    return _back_to_accounts(request)


@login_required
@require_POST
def send_as_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove a Send As address from one of the user's own mailboxes.

    A shared entry is the admin's: the site's mail may depend on it.
    """
    send_as = get_object_or_404(
        SendAsAddress.objects.select_related("account"),
        pk=pk,
        account__user=request.user,
        shared=False,
    )
    send_as.delete()
    messages.success(
        request,
        _("%(mailbox)s no longer sends from %(address)s.")
        % {"mailbox": send_as.account.email, "address": send_as.address},
        fail_silently=True,
    )
    return _back_to_accounts(request)


def _back_to_accounts(request: HttpRequest) -> HttpResponseRedirect:
    next_url = _safe_next(request, request.POST.get("next"))
    return HttpResponseRedirect(next_url or reverse("live_oauth_mail:accounts"))


def _unavailable(
    request: HttpRequest, error: IdentityPlatformUnavailable
) -> HttpResponse:
    logger.warning("%s", error)
    return _failure(
        request,
        _("Microsoft is not answering right now"),
        _(
            "The Microsoft sign-in service did not respond properly. Nothing was "
            "changed. Please try again in a moment."
        ),
        status=503,
        retry=True,
    )
