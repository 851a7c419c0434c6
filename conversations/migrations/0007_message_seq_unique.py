# A migration of its own: PostgreSQL refuses to alter a table that the same transaction has just
# updated row by row (pending deferred foreign-key triggers), so numbering and constraint are split.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_console")]

    operations = [
        migrations.AddConstraint(
            model_name="message",
            constraint=models.UniqueConstraint(fields=("conversation", "seq"), name="message_unique_conversation_seq"),
        ),
    ]
