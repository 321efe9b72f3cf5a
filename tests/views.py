"""Views a site might write, for the routing tests."""

from __future__ import annotations

from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from django_live_oauth_mail.exceptions import AccountNotFound


@csrf_exempt
def naive_contact(request: HttpRequest) -> HttpResponse:
    """The classic mistake: the visitor's address becomes ``from_email``."""
    try:
        sent = send_mail(
            "Contact form",
            request.POST.get("message", ""),
            request.POST["email"],
            ["owner@example.org"],
        )
    except AccountNotFound as error:
        return HttpResponse(type(error).__name__, status=403)
    return HttpResponse(f"sent {sent}")
