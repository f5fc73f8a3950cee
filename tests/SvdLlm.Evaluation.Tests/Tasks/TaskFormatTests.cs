using SvdLlm.Evaluation.Tasks;
using SvdLlm.Models.Tests;

namespace SvdLlm.Evaluation.Tests.Tasks;

/// <summary>
/// Readers and prompt templates against the lm-evaluation-harness task definitions (EleutherAI/lm-evaluation-harness,
/// lm_eval/tasks/: arc/arc_easy.yaml, openbookqa/openbookqa.yaml, piqa/piqa.yaml, hellaswag/hellaswag.yaml +
/// hellaswag/utils.py, winogrande/default.yaml + winogrande/preprocess_winogrande.py, mathqa/mathqa.yaml (version 1.0) +
/// mathqa/utils.py). Every expected string below is written out by hand from those files, character by character.
/// </summary>
public class TaskFormatTests
{
    [Fact]
    public void Arc_ai2_jsonl_and_flat_export_give_the_arc_easy_yaml_prompt()
    {
        using var dir = new TempDirectory();
        string ai2 = dir.File("ARC-Easy-Test.jsonl");
        File.WriteAllText(ai2,
            """{"id":"Mercury_1","question":{"stem":"Which gas do plants absorb?","choices":[{"text":"oxygen","label":"A"},{"text":"carbon dioxide","label":"B"},{"text":"helium","label":"C"}]},"answerKey":"B"}""" + "\n" +
            """{"id":"Mercury_2","question":{"stem":"Pick two.","choices":[{"text":"one","label":"1"},{"text":"two","label":"2"}]},"answerKey":"2"}""" + "\n");
        string flat = dir.File("arc_flat.jsonl");
        File.WriteAllText(flat,
            """{"id":"Mercury_1","question":"Which gas do plants absorb?","choices":{"text":["oxygen","carbon dioxide","helium"],"label":["A","B","C"]},"answerKey":"B"}""" + "\n");

        foreach (var items in new[] { ZeroShotTasks.Arc(ai2), ZeroShotTasks.Arc(flat) })
        {
            var item = items[0];
            // doc_to_text: "Question: {{question}}\nAnswer:"; each choice after target_delimiter " ".
            Assert.Equal("Question: Which gas do plants absorb?\nAnswer:", item.Requests[0].Context);
            Assert.Equal(new[] { " oxygen", " carbon dioxide", " helium" }, item.Requests.Select(r => r.Continuation));
            Assert.All(item.Requests, r => Assert.Equal(item.Requests[0].Context, r.Context));
            Assert.Equal(1, item.Gold); // choices.label.index("B")
            Assert.Equal(new[] { 6, 14, 6 }, item.NormLengths); // len(choice), without the delimiter
        }
        var numeric = ZeroShotTasks.Arc(ai2)[1];
        Assert.Equal(1, numeric.Gold);
        Assert.EndsWith(":2", numeric.Source);
    }

    [Fact]
    public void OpenBookQa_prompt_is_the_bare_stem_and_the_answer_key_is_left_stripped()
    {
        using var dir = new TempDirectory();
        string path = dir.File("test.jsonl");
        File.WriteAllText(path,
            """{"id":"8-343","question":{"stem":"A person wants to start saving money so that they can afford a nice vacation at the end of the year. After looking over their budget and expenses, they decide the best way to save money is to","choices":[{"text":"make more phone calls","label":"A"},{"text":"quit eating lunch out","label":"B"},{"text":"buy less with monopoly money","label":"C"},{"text":"have lunch with friends","label":"D"}]},"answerKey":"B"}""" + "\n" +
            """{"id":"x","question_stem":"The sun is","choices":{"text":["hot","cold"],"label":["A","B"]},"answerKey":" A"}""" + "\n");
        var items = ZeroShotTasks.OpenBookQa(path);
        Assert.Equal("A person wants to start saving money so that they can afford a nice vacation at the end of the year. After looking over their budget and expenses, they decide the best way to save money is to", items[0].Requests[0].Context);
        Assert.Equal(" quit eating lunch out", items[0].Requests[1].Continuation);
        Assert.Equal(1, items[0].Gold);
        Assert.Equal("The sun is", items[1].Requests[0].Context);
        Assert.Equal(0, items[1].Gold); // answerKey.lstrip()
    }

    [Fact]
    public void Piqa_reads_labels_from_the_lst_file_beside_the_jsonl()
    {
        using var dir = new TempDirectory();
        string path = dir.File("valid.jsonl");
        File.WriteAllText(path,
            """{"goal": "How do I ready a guinea pig cage for it's new occupants?", "sol1": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.", "sol2": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish."}""" + "\n" +
            """{"goal": "dresser", "sol1": "replace drawer with bobby pin ", "sol2": "finish, woodwork with bobby pin "}""" + "\n");
        File.WriteAllText(dir.File("valid-labels.lst"), "0\n1\n");
        var items = ZeroShotTasks.Piqa(path);
        // doc_to_text: "Question: {{goal}}\nAnswer:", doc_to_choice: [sol1, sol2]
        Assert.Equal("Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:", items[0].Requests[0].Context);
        Assert.Equal(" replace drawer with bobby pin ", items[1].Requests[0].Continuation);
        Assert.Equal(new[] { 0, 1 }, items.Select(i => i.Gold));

        File.WriteAllText(dir.File("valid-labels.lst"), "0\n");
        var e = Assert.Throws<TaskDataException>(() => ZeroShotTasks.Piqa(path));
        Assert.Contains("valid-labels.lst", e.Message);
        File.WriteAllText(dir.File("valid-labels.lst"), "0\nx\n");
        e = Assert.Throws<TaskDataException>(() => ZeroShotTasks.Piqa(path));
        Assert.Contains("valid-labels.lst:2", e.Message);
        File.Delete(dir.File("valid-labels.lst"));
        e = Assert.Throws<TaskDataException>(() => ZeroShotTasks.Piqa(path));
        Assert.Contains("valid.jsonl:1", e.Message);
    }

    [Fact]
    public void HellaSwag_preprocessing_matches_utils_py_character_by_character()
    {
        using var dir = new TempDirectory();
        string path = dir.File("hellaswag_val.jsonl");
        File.WriteAllText(path,
            """{"ind": 4, "activity_label": "Home and Garden", "ctx_a": "[header] How to clean a pan. [title] Fill the pan with water.", "ctx_b": "then ADD Soap", "ctx": "x", "endings": ["[step] Scrub it  well.", " rinse [title] and dry. ", "x", "y"], "source_id": "wikihow~1", "split": "val", "split_type": "indomain", "label": 1}""" + "\n" +
            """{"ind": 5, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"}""" + "\n");
        var items = ZeroShotTasks.HellaSwag(path);
        // query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()); capitalize lower-cases the rest;
        // " [title]" -> ". ", then every [...] removed, then "  " -> " ".
        Assert.Equal("Home and Garden: How to clean a pan.. Fill the pan with water. Then add soap", items[0].Requests[0].Context);
        // utils.py strips BEFORE deleting "[step]", so this choice keeps a leading space after the delimiter's.
        Assert.Equal("  Scrub it well.", items[0].Requests[0].Continuation);
        Assert.Equal(" rinse. and dry.", items[0].Requests[1].Continuation);
        Assert.Equal(1, items[0].Gold);
        // The first validation item of HellaSwag, as lm-eval renders it.
        Assert.Equal("Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then", items[1].Requests[0].Context);
        Assert.Equal(" , the man continues removing the snow on his car.", items[1].Requests[3].Continuation);
        Assert.Equal(3, items[1].Gold);
        Assert.Equal("Hello world", ZeroShotTasks.PythonCapitalize("hELLO WORLD"));
    }

    [Fact]
    public void WinoGrande_scores_the_shared_suffix_after_each_option_filled_prefix()
    {
        using var dir = new TempDirectory();
        string path = dir.File("dev.jsonl");
        File.WriteAllText(path,
            """{"qID": "3QHITW7OYO7Q6B6ISU2UMJB84ZLAQE-2", "sentence": "Ian volunteered to eat Dennis's menudo after already having a bowl because _ despised eating intestine.", "option1": "Ian", "option2": "Dennis", "answer": "2"}""" + "\n");
        var item = ZeroShotTasks.WinoGrande(path)[0];
        Assert.Equal("Ian volunteered to eat Dennis's menudo after already having a bowl because Ian", item.Requests[0].Context);
        Assert.Equal("Ian volunteered to eat Dennis's menudo after already having a bowl because Dennis", item.Requests[1].Context);
        Assert.All(item.Requests, r => Assert.Equal(" despised eating intestine.", r.Continuation));
        Assert.Equal(1, item.Gold);
    }

    [Fact]
    public void MathQa_reads_the_json_array_and_parses_options_as_utils_py()
    {
        using var dir = new TempDirectory();
        string path = dir.File("test.json");
        File.WriteAllText(path, """
            [
              {
                "Problem": "a shopkeeper sold an article offering a discount of 5 % and earned a profit of 31.1 % . what would have been the percentage of profit earned if no discount had been offered ?",
                "Rationale": "x",
                "options": "a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these",
                "correct": "a",
                "annotated_formula": "x",
                "category": "gain"
              },
              {"Problem": "p", "options": "a ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "correct": "e"}
            ]
            """);
        var items = ZeroShotTasks.MathQa(path);
        Assert.Equal("Question: a shopkeeper sold an article offering a discount of 5 % and earned a profit of 31.1 % . what would have been the percentage of profit earned if no discount had been offered ?\nAnswer:", items[0].Requests[0].Context);
        Assert.Equal(new[] { " 38", " 27.675", " 30", " data inadequate", " none of these" }, items[0].Requests.Select(r => r.Continuation));
        Assert.Equal(0, items[0].Gold);
        Assert.Equal(4, items[1].Gold);
        Assert.EndsWith("test.json:10", items[1].Source);

        File.WriteAllText(path, "[\n {\"Problem\": \"p\", \"options\": \"a ) 1 , b ) 2 , e ) 3\", \"correct\": \"a\"},\n {\"Problem\": \"q\", \"options\": \"a ) 1 , e ) 2\", \"correct\": \"f\"}\n]");
        var e = Assert.Throws<TaskDataException>(() => ZeroShotTasks.MathQa(path));
        Assert.Contains("test.json:3", e.Message);
        Assert.Contains("correct", e.Message);
    }

    [Theory]
    [InlineData("arc", "{\"question\":{\"stem\":\"q\",\"choices\":[{\"text\":\"a\",\"label\":\"A\"},{\"text\":\"b\",\"label\":\"B\"}]},\"answerKey\":\"A\"}\n{\"question\":{\"choices\":[]},\"answerKey\":\"A\"}\n", ":2", "question.stem")]
    [InlineData("arc", "{\"question\":{\"stem\":\"q\",\"choices\":[{\"text\":\"a\",\"label\":\"A\"},{\"text\":\"b\",\"label\":\"B\"}]},\"answerKey\":\"E\"}\n", ":1", "answerKey")]
    [InlineData("arc", "{\"question\":{\"stem\":\"q\"}}\n\n{not json\n", ":3", "JSON")]
    [InlineData("hellaswag", "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"endings\":[\"x\",\"y\"]}\n", ":1", "label")]
    [InlineData("hellaswag", "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"endings\":[\"x\",3],\"label\":0}\n", ":1", "endings[1]")]
    [InlineData("hellaswag", "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"endings\":[\"x\",\"y\"],\"label\":5}\n", ":1", "answer index 5")]
    [InlineData("winogrande", "{\"sentence\":\"no blank here\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"1\"}\n", ":1", "'_'")]
    [InlineData("winogrande", "{\"sentence\":\"a _ b\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"\"}\n", ":1", "answer")]
    [InlineData("openbookqa", "[1, 2]", ":1", "array")]
    public void Malformed_records_are_errors_naming_file_line_and_field(string task, string content, string line, string what)
    {
        using var dir = new TempDirectory();
        string path = dir.File("data.jsonl");
        File.WriteAllText(path, content);
        var e = Assert.Throws<TaskDataException>(() => TaskRegistry.ReadItems(task == "arc" ? "arc_easy" : task, path));
        Assert.Contains("data.jsonl" + line, e.Message);
        Assert.Contains(what, e.Message);
    }
}
