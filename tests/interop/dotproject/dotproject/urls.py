from django.urls import include, path
from oauth2_provider import urls as oauth2_urls

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # RFC 8414 §3.1: the metadata of issuer http://HOST/o lives at
    # http://HOST/.well-known/oauth-authorization-server/o, outside the /o/ prefix.
    path(
        "",
        include((oauth2_urls.metadata_urlpatterns, "oauth2_provider"), namespace="oauth2_metadata"),
    ),
]
