from goals.models import Goal


def goal_create(*, name: str, starts_on, deadline, description: str = "", owner=None) -> Goal:
    goal = Goal(name=name, description=description, owner=owner, starts_on=starts_on, deadline=deadline)
    goal.full_clean()
    goal.save()
    return goal


def goal_update(*, goal: Goal, **fields) -> Goal:
    for name, value in fields.items():
        setattr(goal, name, value)
    goal.full_clean()
    goal.save()
    return goal
