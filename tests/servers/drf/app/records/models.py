from django.db import models


class Record(models.Model):
    # Client-set primary key: the client sends it in the POST body. (With Django's default
    # AutoField a client-sent "id" would be silently ignored and the server would number rows.)
    id = models.CharField(primary_key=True, max_length=36)
    title = models.TextField(blank=True, default="")
    count = models.BigIntegerField(default=0)
    done = models.BooleanField(default=False)

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self):
        return self.id


class Task(Record):
    class Meta(Record.Meta):
        db_table = "tasks"


class Note(Record):
    class Meta(Record.Meta):
        db_table = "notes"


class Customer(Record):
    class Meta(Record.Meta):
        db_table = "customers"
