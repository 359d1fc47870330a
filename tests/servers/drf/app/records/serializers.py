from rest_framework import serializers

from .models import Customer, Note, Task


class RecordSerializer(serializers.ModelSerializer):
    """id is written once, by the POST that creates the record; on PUT/PATCH it is
    read-only (ignored if sent), so an update can never re-key or copy a record."""

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:
            fields["id"].read_only = True
        return fields


class TaskSerializer(RecordSerializer):
    class Meta:
        model = Task
        fields = ["id", "title", "count", "done"]


class NoteSerializer(RecordSerializer):
    class Meta:
        model = Note
        fields = ["id", "title", "count", "done"]


class CustomerSerializer(RecordSerializer):
    class Meta:
        model = Customer
        fields = ["id", "title", "count", "done"]
