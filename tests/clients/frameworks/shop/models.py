from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    email = models.CharField(max_length=100, null=True)

    class Meta:
        app_label = "shop"
