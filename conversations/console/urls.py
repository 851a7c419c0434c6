from django.urls import path

from . import actions, views
from contactcenter import auth_views

urlpatterns = [
    path("", views.workspace, name="home"),
    path("login/", auth_views.ThrottledLoginView.as_view(), name="login"),
    path("sidebar/", views.sidebar_fragment, name="sidebar"),
    path("sync/", views.work_sync, name="sync"),
    path("canned/", views.canned_list, name="canned"),
    path("presence/", actions.presence, name="presence"),
    path("customers/", views.customer_list, name="customers"),
    path("customers/<int:customer_id>/", views.customer_detail, name="customer"),
    path("customers/<int:customer_id>/catchup/", views.timeline_catchup, name="catchup"),
    path("customers/<int:customer_id>/older/", views.timeline_older, name="older"),
    path("customers/<int:customer_id>/edit/", actions.customer_edit, name="customer-edit"),
    path("customers/<int:customer_id>/merge/", actions.customer_merge_view, name="customer-merge"),
    path("suggestions/<int:suggestion_id>/dismiss/", actions.suggestion_dismiss, name="suggestion-dismiss"),
    path("merges/<int:merge_id>/undo/", actions.merge_undo, name="merge-undo"),
    path("messages/<int:message_id>/html/", views.message_html, name="message-html"),
    path("messages/<int:message_id>/retry/", actions.message_retry, name="message-retry"),
    path("offers/<int:offer_id>/accept/", actions.offer_decide, {"decision": "accept"}, name="offer-accept"),
    path("offers/<int:offer_id>/reject/", actions.offer_decide, {"decision": "reject"}, name="offer-reject"),
    path("conversations/<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("conversations/<int:conversation_id>/reply/", actions.reply, name="reply"),
    path("conversations/<int:conversation_id>/note/", actions.note, name="note"),
    path("conversations/<int:conversation_id>/resolve/", actions.resolve, name="resolve"),
    path("conversations/<int:conversation_id>/read/", actions.mark_read, name="read"),
    path("conversations/<int:conversation_id>/snooze/", actions.snooze, name="snooze"),
    path("conversations/<int:conversation_id>/reopen/", actions.reopen, name="reopen"),
    path("conversations/<int:conversation_id>/transfer/", actions.transfer, name="transfer"),
    path("conversations/<int:conversation_id>/pick/", actions.pick, name="pick"),
    path("conversations/<int:conversation_id>/assign/", actions.assign, name="assign"),
]
