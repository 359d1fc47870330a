from django.urls import include, path
from rest_framework.routers import DefaultRouter

from records.views import CustomerViewSet, NoteViewSet, TaskViewSet

router = DefaultRouter()  # trailing slashes: /api/tasks/ and /api/tasks/<id>/
router.register("tasks", TaskViewSet)
router.register("notes", NoteViewSet)
router.register("customers", CustomerViewSet)

urlpatterns = [
    path("api/", include(router.urls)),
]
