from django.urls import path

from . import views

urlpatterns = [
    path("queues/", views.QueueListApi.as_view(), name="api-queue-list"),
    path("agents/", views.AgentListApi.as_view(), name="api-agent-list"),
    path("agents/me/presence/", views.PresenceApi.as_view(), name="api-presence"),
    path("offers/<int:offer_id>/accept/", views.OfferDecisionApi.as_view(decision="accept"), name="api-offer-accept"),
    path("offers/<int:offer_id>/reject/", views.OfferDecisionApi.as_view(decision="reject"), name="api-offer-reject"),
    path("conversations/<int:conversation_id>/routing/", views.ConversationRoutingApi.as_view(),
         name="api-conversation-routing"),
]
