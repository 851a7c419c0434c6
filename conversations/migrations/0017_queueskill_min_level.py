"""Queue.required_skills gets a through model, QueueSkill, on the table the plain many-to-many
already had (state only), then the table gets its new column: no rows are copied or lost."""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0016_conversation_route_at"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="QueueSkill",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("queue", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="conversations.queue")),
                        ("skill", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="conversations.skill")),
                    ],
                    options={
                        "verbose_name": "required skill",
                        "db_table": "conversations_queue_required_skills",
                        "unique_together": {("queue", "skill")},
                    },
                ),
                migrations.AlterField(
                    model_name="queue",
                    name="required_skills",
                    field=models.ManyToManyField(blank=True, related_name="queues", through="conversations.QueueSkill",
                                                 to="conversations.skill"),
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="queueskill",
            name="min_level",
            field=models.PositiveSmallIntegerField(default=1, help_text="Agents need at least this level in the skill",
                                                   validators=[django.core.validators.MinValueValidator(1)]),
        ),
    ]
